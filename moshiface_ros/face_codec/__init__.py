"""The face codec: a VQ-VAE that turns 25 fps face motion into 8 tokens per 80 ms step."""
