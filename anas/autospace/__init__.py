"""AutoSpace (Zhou et al., ICCV 2021): a search space evolved from the data.

``population`` holds the candidate blocks, the populations and how an evolved space is
derived from them (pure data); ``evolve`` trains the mixed networks that score them and
runs the evolution (``anas space evolve``)."""
