"""Stage two: the search problem (``problem``), strategies found by name
(``strategies``), what a search writes (``outputs``) and the whole command
(``runner``)."""
