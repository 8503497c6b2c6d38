#!/usr/bin/env python3
"""Regenerate the dashboard's pre-built assets from vendored data (run by hand after a vendor bump):

- ``analytics/static/dashboard/world.svg``: the world map, one path per country (ISO 3166-1
  alpha-2 in ``data-code``), projected (Equal Earth) from the vendored world-atlas TopoJSON
  (Natural Earth 1:110m), so the browser needs neither TopoJSON nor a projection library;
- ``analytics/dashboard/countries.py``: English country names by alpha-2 code, from Debian's
  ``iso-codes`` (``/usr/share/iso-codes/json/iso_3166-1.json``).

    python scripts/build_dashboard_assets.py
"""

import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ATLAS = ROOT / "analytics/dashboard/vendor/world-atlas-2.0.2/countries-110m.json"
ISO = Path("/usr/share/iso-codes/json/iso_3166-1.json")
SVG = ROOT / "analytics/static/dashboard/world.svg"
NAMES = ROOT / "analytics/dashboard/countries.py"
WIDTH = 1000
SKIP = {"010"}  # Antarctica: nobody visits from there, and it takes a fifth of the map

A1, A2, A3, A4 = 1.340264, -0.081106, 0.000893, 0.003796
M = math.sqrt(3) / 2


def equal_earth(lon: float, lat: float) -> tuple[float, float]:
    lam, phi = math.radians(lon), math.radians(lat)
    theta = math.asin(M * math.sin(phi))
    t2 = theta * theta
    t6 = t2 * t2 * t2
    x = lam * math.cos(theta) / (M * (A1 + 3 * A2 * t2 + t6 * (7 * A3 + 9 * A4 * t2)))
    y = theta * (A1 + A2 * t2 + t6 * (A3 + A4 * t2))
    return x, y


def decode_arcs(topology: dict) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def _number(v: float) -> str:
    text = f"{v:g}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def _pair(x: float, y: float) -> str:
    """SVG path numbers, as short as they read: "1.5-.2", ".4 3"."""
    a, b = _number(x), _number(y)
    return a + b if b.startswith("-") or (b.startswith(".") and "." in a) else f"{a} {b}"


def ring(arcs, indexes):
    """The ring's points, longitudes unwrapped so that a ring crossing the antimeridian (Fiji,
    Chukotka) runs on past ±180° (off the map's edge) instead of across the whole map."""
    points = []
    for i in indexes:
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]
        points.extend(arc[1:] if points else arc)
    out = []
    for lon, lat in points:
        if out:
            while lon - out[-1][0] > 180:
                lon -= 360
            while lon - out[-1][0] < -180:
                lon += 360
        out.append((lon, lat))
    mean = sum(lon for lon, _ in out) / len(out)
    shift = -360 if mean > 180 else 360 if mean < -180 else 0
    return [(lon + shift, lat) for lon, lat in out]


def main():
    topology = json.loads(ATLAS.read_text())
    arcs = decode_arcs(topology)
    iso = json.loads(ISO.read_text())["3166-1"]
    by_numeric = {c["numeric"]: c["alpha_2"] for c in iso}
    names = {c["alpha_2"]: c.get("common_name", c["name"]) for c in iso}
    names["XK"] = "Kosovo"  # user-assigned code, as browsers and GeoIP databases use it

    x_max, y_max = equal_earth(180, 0)[0], equal_earth(0, 90)[1]
    scale = WIDTH / (2 * x_max)
    height = round(2 * y_max * scale * 0.86)  # the far south (below ~ -58°) is cut with Antarctica
    top = y_max * scale

    def project(lon, lat):
        x, y = equal_earth(lon, lat)
        return round(x * scale + WIDTH / 2, 1), round(top - y * scale, 1)

    paths = []
    for geometry in topology["objects"]["countries"]["geometries"]:
        numeric = geometry.get("id")
        if numeric in SKIP or geometry["type"] not in ("Polygon", "MultiPolygon"):
            continue
        code = by_numeric.get(numeric) or {"Kosovo": "XK", "N. Cyprus": "CY", "Somaliland": "SO"}.get(
            geometry["properties"]["name"]
        )
        if code is None:
            continue
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        d = []
        for polygon in polygons:
            for indexes in polygon:
                pts = [project(lon, lat) for lon, lat in ring(arcs, indexes)]
                out, last = [], None
                for i, (x, y) in enumerate(pts):
                    if i == 0:
                        out.append("M" + _pair(x, y))
                    elif (x, y) != last:
                        pair = _pair(round(x - last[0], 1), round(y - last[1], 1))
                        # after the first "l", further pairs continue it (implicit lineto)
                        out.append(("l" if len(out) == 1 else "" if pair.startswith("-") else " ") + pair)
                    last = (
                        (x, y)
                        if i == 0
                        else (round(last[0] + round(x - last[0], 1), 1), round(last[1] + round(y - last[1], 1), 1))
                    )
                d.append("".join(out) + "z")
        paths.append((code, "".join(d)))
    paths.sort()
    body = "\n".join(f'<path data-code="{code}" d="{d}"><title>{names.get(code, code)}</title></path>' for code, d in paths)
    SVG.parent.mkdir(parents=True, exist_ok=True)
    SVG.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img">\n{body}\n</svg>\n')
    lines = [
        '"""English country names by ISO 3166-1 alpha-2 code (from Debian\'s iso-codes; regenerate with',
        'scripts/build_dashboard_assets.py)."""',
        "",
        "NAMES = {",
        *[f"    {code!r}: {name!r}," for code, name in sorted(names.items())],
        "}",
        "",
    ]
    NAMES.write_text("\n".join(lines))
    print(f"{SVG.relative_to(ROOT)}: {len(paths)} countries, {SVG.stat().st_size:,} bytes")
    print(f"{NAMES.relative_to(ROOT)}: {len(names)} names")


if __name__ == "__main__":
    main()
