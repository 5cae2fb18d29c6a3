"""Dataset records, readers, synthetic data, image cache, transforms and samplers."""

from vireid._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Sample": ".records",
        "VISIBLE": ".records",
        "INFRARED": ".records",
        "SYSUMM01": ".sysu",
        "RegDB": ".regdb",
        "LLCM": ".llcm",
        "open_dataset": ".registry",
        "register_reader": ".registry",
        "dataset_names": ".registry",
        "generate_synthetic": ".synthetic",
        "contact_sheet": ".synthetic",
        "read_synthetic_info": ".synthetic",
        "load_images": ".image_cache",
        "as_rgb8": ".image_cache",
        "build_train_transforms": ".transforms",
        "ClusterSampler": ".samplers",
        "IdentitySampler": ".samplers",
    },
)
