"""Tests of qcalo.training, qcalo.generation and the train/generate CLI verbs."""
