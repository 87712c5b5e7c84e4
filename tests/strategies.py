"""Hypothesis strategies over tiny PixArt-, DiT- and hand-written-DiT-shaped cases."""

from hypothesis import strategies as st

from harness import dit_case, hand_case, pixart_case

grids = st.tuples(st.sampled_from([2, 4, 6]), st.sampled_from([2, 4, 6]))


@st.composite
def cases(draw, families=("pixart", "dit", "hand", "parallel")):
    family = draw(st.sampled_from(families))
    layers = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    grid = draw(grids)
    seed = draw(st.integers(0, 3))
    if family == "pixart":
        return pixart_case(layers, heads, draw(st.sampled_from([4, 8])), batch, grid, seed)
    if family == "dit":  # diffusers' DiT unpatchifies a square grid only
        return dit_case(layers, heads, draw(st.sampled_from([4, 8])), batch, (grid[0], grid[0]), seed)
    if family == "parallel":
        return hand_case(layers, heads, batch, grid, context=False, parallel=True, seed=seed)
    return hand_case(layers, heads, batch, grid, graph_break=draw(st.booleans()) and layers > 1, seed=seed)
