from tests.export.fixtures import cnn_exported, cnn_run, unet_exported  # noqa: F401  (fixtures)
