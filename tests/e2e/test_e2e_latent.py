"""The Latent space page in a real browser: a WebGL scatter of the test images, a click decodes one."""

from __future__ import annotations

import re

from e2e_helpers import (
    SEED_RUN,
    assert_no_exception,
    chart,
    expect,
    go_to,
    images,
    loaded,
    save_screenshot,
    slider_value,
    wait_until,
)

SCATTER = ".st-key-latent_scatter .js-plotly-plot"

# The most isolated point of the scatter (largest distance to its nearest neighbour, in pixels), so a
# click there cannot land on another point; returned in viewport coordinates with its customdata.
CLICK_TARGET_JS = """(selector) => {
  const el = document.querySelector(selector);
  el.scrollIntoView({block: 'center'});
  const layout = el._fullLayout, box = el.getBoundingClientRect();
  const xa = layout.xaxis, ya = layout.yaxis;
  const points = [];
  for (const trace of el._fullData) {
    if (trace.type !== 'scattergl' || trace.visible !== true) continue;
    for (let i = 0; i < trace._length; i++) {
      const px = xa._offset + xa.d2p(trace.x[i]), py = ya._offset + ya.d2p(trace.y[i]);
      const inside = px > xa._offset + 5 && px < xa._offset + xa._length - 5 &&
                     py > ya._offset + 5 && py < ya._offset + ya._length - 5;
      if (inside) {
        points.push({px, py, index: Number(trace.customdata[i]), trace: trace.name});
      }
    }
  }
  let best = null;
  for (const p of points) {
    let nearest = Infinity;
    for (const q of points) {
      if (q !== p) nearest = Math.min(nearest, (p.px - q.px) ** 2 + (p.py - q.py) ** 2);
    }
    if (!best || nearest > best.nearest) best = {...p, nearest};
  }
  return best && {x: box.left + best.px, y: box.top + best.py, index: best.index, trace: best.trace,
                  gap: Math.sqrt(best.nearest), candidates: points.length};
}"""


def test_scatter_has_every_point_and_a_click_decodes_the_image(open_app):
    """Journey 4: as many points as the slider says, in Scattergl traces; a click shows the image."""
    page = open_app(query=f"run={SEED_RUN}")
    go_to(page, "Latent space", "Latent space")
    figure = wait_until(page, lambda: chart(page, SCATTER), timeout_s=90, message="the latent scatter")
    points = int(slider_value(page, "Points"))
    gl = [t for t in figure["traces"] if t["type"] == "scattergl"]
    assert gl, figure["traces"]
    assert sum(t["points"] for t in gl) == points, (points, gl)
    assert len(gl) == 10, [t["name"] for t in gl]  # one trace per digit class
    expect(page.get_by_text("Click a point in the scatter")).to_be_visible()

    target = page.evaluate(CLICK_TARGET_JS, SCATTER)
    assert target and target["gap"] > 3, target  # a point with room around it
    page.mouse.click(target["x"], target["y"])

    heading = page.get_by_role("heading", name=re.compile(rf"^Image {target['index']} · {target['trace']}$"))
    expect(heading).to_be_visible()
    expect(page.get_by_text("Input", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Decoded mean \(model of epoch \d+\)$"))).to_be_visible()
    shown = wait_until(
        page, lambda: len(found := loaded(images(page))) >= 2 and found, message="the input and decoded images"
    )
    assert all(i["naturalWidth"] > 0 for i in shown), shown
    assert_no_exception(page)
    save_screenshot(page, "latent")
