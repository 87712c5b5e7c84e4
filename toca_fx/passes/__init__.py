"""Graph passes: find sites (sites, tokens), prove partial rewrites (prove), find step-invariant
context work (context), analyse a region (analysis), count FLOPs (flops) and build the FULL/PARTIAL
variants (rewrite).

``counters`` records what the passes matched, in the manner of Inductor's pattern counters.
"""

from collections import Counter

counters: Counter = Counter()
