"""The SVM catalogs as a chain of tasks (``hapdask.svm.runner``): started once the total and
filter products are written (not after their keywords), the keywords of a product written after
the catalog tasks reading its file, the ECSV files after the keywords (their metadata); the
catalogs are those of :func:`hapdask.catalogs.make_catalogs`' one call on the finished
products."""

from __future__ import annotations

from dask.core import get_dependencies

from hapdask.catalogs import CatalogParams, make_catalogs, read_product
from hapdask.svm import runner


def _upstream(graph: dict, key) -> set:
    """Every task ``key`` depends on, directly or not."""
    seen, todo = set(), [key]
    while todo:
        for d in get_dependencies(graph, todo.pop()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_catalog_tasks_order_and_priorities(sim, tmp_path, aligned_acs_visit):
    p, states = aligned_acs_visit()
    staging = tmp_path / "staging"
    staging.mkdir()
    graph, keys, jobs = runner.products_graph(p, states, str(staging))
    for j in jobs:
        j.scratch.remove()
    (det,) = p.detectors
    total = det.drizzle_name
    filters = [f.drizzle_name for f in det.filters]
    backgrounds = [("svm-catalogs-background", f) for f in filters]
    detect, points, segments = (("svm-catalogs-detect", total), ("svm-catalogs-points", total),
                                ("svm-catalogs-segments", total))
    measures = [("svm-catalogs-filter", f) for f in filters]
    tasks = [*backgrounds, detect, points, segments, *measures]
    for k in tasks:
        # no product's keywords before any of the pixel work (it reads the written products)
        assert not any(u[0] == "svm-keywords" for u in _upstream(graph, k)), k
    # the backgrounds (their sigma clipping: the largest temporaries) one after the other,
    # then the total's detection inputs, its point sources, its segmentation (memory)
    chain = [*backgrounds, detect, points, segments]
    for a, b in zip(chain, chain[1:], strict=False):
        assert a in _upstream(graph, b), (a, b)
    # each filter's photometry after both detections and its background, beside the others'
    for f, m in zip(filters, measures, strict=True):
        assert {points, segments, ("svm-catalogs-background", f)} <= get_dependencies(graph, m)
        assert not set(measures) & _upstream(graph, m)
        # its saturation map from the alignment, made beside the total's point sources
        # (after its detection inputs, below the chain's priority), not before the tiles
        sat = ("svm-catalogs-saturation", f)
        assert sat in get_dependencies(graph, m)
        assert get_dependencies(graph, sat) == {("svm-state", det.key + "-" + det.prefix),
                                                detect}
        assert keys["priority"][sat] == 1 < keys["priority"][points]
    # a product's keywords (rewritten headers) wait for the catalog tasks reading its file
    kw_total = get_dependencies(graph, ("svm-keywords", total))
    assert {points, segments} <= kw_total
    for f in filters:
        assert {("svm-catalogs-background", f), ("svm-catalogs-filter", f)} <= \
            get_dependencies(graph, ("svm-keywords", f))
    # the ECSV files after every keyword (their metadata) and the measurements
    write = ("svm-catalogs", total)
    assert keys["catalogs"] == [write]
    assert {("svm-keywords", n) for n in [total, *filters]} | set(measures) <= \
        get_dependencies(graph, write)
    # priorities (local threads): the total and filter products' tile writes and ends (the
    # catalogs' inputs) first, then the catalog tasks, then those products' readers and
    # keywords, then the rest (the exposure products')
    prio = keys["priority"]
    assert all(prio[k] == 2 for k in [*tasks, write])
    for n in [total, *filters]:
        for kind in ("svm-keywords", "svm-keywords-footprint", "svm-keywords-sregion",
                     "svm-preview"):
            assert prio[(kind, n)] == 1, (kind, n)
        (end,) = get_dependencies(graph, ("svm-preview", n))
        assert prio[end] == 3  # its end and the writes of its tiles
        writes = [d for d in get_dependencies(graph, end) if str(d[0]).startswith("drz-write")]
        assert writes and all(prio[w] == 3 for w in writes)
    exposures = [e.drizzle_name for f in det.filters for e in f.exposures]
    assert exposures
    assert not any(k[1] in exposures for k in prio if isinstance(k, tuple) and len(k) > 1)
    assert set(prio) <= set(graph)


def test_catalog_tasks_equal_one_call(sim, acs_run, tmp_path, aligned_acs_visit):
    """The chain's ECSV files are byte for byte make_catalogs' (the one-task path before the
    chain) on the run's finished products, with the same saturation maps."""
    _, _, out = acs_run
    p, states = aligned_acs_visit()
    (det,) = p.detectors
    state = states[det.key + "-" + det.prefix]
    filters, saturated = {}, {}
    for f in det.filters:
        head = read_product(out / f.drizzle_name, memmap=True)
        fname = str(head.keyword("FILTER")).lower()
        filters[fname] = read_product(out / f.drizzle_name, weights=False)
        saturated[fname] = runner.saturation_map([p.exposures[e.path] for e in f.exposures],
                                                 state, head.sci.shape)
    cats = make_catalogs(read_product(out / det.drizzle_name, weights=False), filters,
                         CatalogParams.for_detector(det.key), saturated=saturated,
                         scratch=tmp_path)
    written = cats.write(tmp_path / "one")
    assert len(written) == 2 + 2 * len(det.filters)
    for path in written:
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
