"""Evidence for toca_fx on models we own: small DiT and PixArt-α-architecture diffusion models and a digit
classifier trained on scikit-learn's handwritten digits (``digits``, ``train``), and the quality metrics that
compare cached against uncached samples (``metrics``)."""
