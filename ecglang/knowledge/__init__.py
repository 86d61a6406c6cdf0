"""Clinical knowledge: the snippet base (`base`), its FAISS index (`index`) and label retrieval (`retrieval`).

Importing this package is cheap (numpy only): torch, sentence-transformers, FAISS and bm25s load on first use.
"""

from ecglang.knowledge.base import KnowledgeBase, Snippet
from ecglang.knowledge.index import Hit, KnowledgeIndex
from ecglang.knowledge.retrieval import ComposedPrompt, compose_prompts, retrieve_for_label

__all__ = [
    "ComposedPrompt",
    "Hit",
    "KnowledgeBase",
    "KnowledgeIndex",
    "Snippet",
    "compose_prompts",
    "retrieve_for_label",
]
