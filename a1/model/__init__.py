"""The InternVLA-A1 model: three experts in one Mixture-of-Transformers."""
