"""The published AttentiveNAS and AlphaNet supernets, imported into run folders (``anas import``)."""
