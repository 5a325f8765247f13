"""The elastic SASRec supernet and its dense export."""

from nasrec.models.export import export, load_model, save_model
from nasrec.models.sasrec import ElasticSASRec, ModelDims

__all__ = ["ElasticSASRec", "ModelDims", "export", "load_model", "save_model"]
