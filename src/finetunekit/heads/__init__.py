from finetunekit.heads.base import Head, pool_features
from finetunekit.heads.classification import ClassificationHead
from finetunekit.heads.regression import RegressionHead

__all__ = ["Head", "ClassificationHead", "RegressionHead", "pool_features"]
