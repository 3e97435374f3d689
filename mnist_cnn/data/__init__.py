"""MNIST data: the idx files, the fixed-seed split, pixel rules, augmentation and the LightningDataModule."""
