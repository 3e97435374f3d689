"""Training: the LightningModule, its callbacks, and fitting one configured run or a sweep of them."""
