"""attn_doc2vec: Doc2Vec in PyTorch with a learned attention layer over the context words."""

from gensim.models.doc2vec import TaggedDocument, TaggedLineDocument

__version__ = "0.1.0"

from attn_doc2vec.config import Doc2VecConfig  # noqa: E402
from attn_doc2vec.doc2vec import Doc2Vec  # noqa: E402

AttnDoc2Vec = Doc2Vec

__all__ = ["AttnDoc2Vec", "Doc2Vec", "Doc2VecConfig", "TaggedDocument", "TaggedLineDocument", "__version__"]
