"""Mouse and keyboard gestures on the page, as JavaScript the page runs on load.

Gradio's click event on an image gives the pixel but not the button, and knows no drags: this script
turns a right click into a negative click and a drag into a box (drawn while dragging), makes a row of
the object list select its object, lets Enter apply the frame box, and adds keyboard shortcuts (arrow
keys: previous/next frame, Ctrl+Z / Ctrl+Y: undo/redo). Each gesture is written as JSON into a hidden
textbox (`#gesture`) whose change event runs `Handlers.gesture`.
"""

GESTURES_JS = r"""
() => {
  // Gestures Gradio's events cannot express: right click = negative click, drag = box, a row of the
  // object list = select it, arrow keys = previous/next frame, Ctrl+Z / Ctrl+Y = undo/redo.
  // Each gesture is written as JSON into the hidden #gesture textbox, whose change event runs the handler.
  const send = (data) => {
    const box = document.querySelector("#gesture textarea, #gesture input");
    if (!box) return;
    const setter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(box), "value").set;
    setter.call(box, JSON.stringify({...data, t: Date.now()}));
    box.dispatchEvent(new Event("input", {bubbles: true}));
  };
  const pixel = (img, e) => {  // page position -> image pixel (the image is letterboxed, object-fit: contain)
    const r = img.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const ox = (r.width - img.naturalWidth * s) / 2, oy = (r.height - img.naturalHeight * s) / 2;
    return [(e.clientX - r.left - ox) / s, (e.clientY - r.top - oy) / s];
  };
  const frameAt = (e) => {  // the frame image under the pointer (whatever element Gradio put on top of it)
    const img = document.querySelector("#frame img");
    if (!img || !img.naturalWidth) return null;
    const r = img.getBoundingClientRect();
    return e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom ? img : null;
  };
  // The box being dragged, drawn over the image until the mouse is released (the page then shows it).
  const band = document.createElement("div");
  band.id = "samtrack-band";
  band.style.cssText = "position:fixed;display:none;pointer-events:none;z-index:1000;box-sizing:border-box;" +
    "border:2px dashed #fff;outline:1px solid #000;background:rgba(255,255,255,0.12)";
  document.body.appendChild(band);
  const draw = (img, a, b) => {
    const r = img.getBoundingClientRect();
    const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
    const x0 = clip(Math.min(a[0], b[0]), r.left, r.right), x1 = clip(Math.max(a[0], b[0]), r.left, r.right);
    const y0 = clip(Math.min(a[1], b[1]), r.top, r.bottom), y1 = clip(Math.max(a[1], b[1]), r.top, r.bottom);
    Object.assign(band.style, {display: "block", left: x0 + "px", top: y0 + "px",
                               width: (x1 - x0) + "px", height: (y1 - y0) + "px"});
  };
  let start = null, dragged = false;
  document.addEventListener("mousedown", (e) => {
    const img = frameAt(e);
    if (img && e.button === 0) { start = [img, pixel(img, e), [e.clientX, e.clientY]]; dragged = false; e.preventDefault(); }
  }, true);
  document.addEventListener("mousemove", (e) => {
    if (!start) return;
    const [img, , origin] = start;
    if (Math.abs(e.clientX - origin[0]) > 4 || Math.abs(e.clientY - origin[1]) > 4) draw(img, origin, [e.clientX, e.clientY]);
  }, true);
  document.addEventListener("mouseup", (e) => {
    if (!start || e.button !== 0) return;
    const [img, [x0, y0]] = start;
    const [x1, y1] = pixel(img, e);
    start = null;
    band.style.display = "none";
    if (Math.abs(x1 - x0) > 8 && Math.abs(y1 - y0) > 8) { dragged = true; send({kind: "box", box: [x0, y0, x1, y1]}); }
  }, true);
  document.addEventListener("click", (e) => {  // a row of the object list selects its object
    const row = e.target.closest && e.target.closest(".samtrack-objects tr[data-id]");
    if (row) send({kind: "select", id: Number(row.dataset.id)});
  });
  document.addEventListener("click", (e) => {  // a drag is a box, not also a click
    if (dragged && frameAt(e)) { dragged = false; e.stopPropagation(); e.preventDefault(); }
  }, true);
  document.addEventListener("contextmenu", (e) => {
    const img = frameAt(e);
    if (img) { e.preventDefault(); send({kind: "negative", point: pixel(img, e)}); }
  }, true);
  document.addEventListener("keydown", (e) => {
    // Enter in the frame box applies it (the frame is shown as the number is typed; this ends the typing)
    if (e.key === "Enter" && e.target.closest && e.target.closest("#slider")) { e.target.blur(); return; }
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || e.target.isContentEditable) return;
    const press = (id) => { const b = document.querySelector(id); if (b) { b.click(); e.preventDefault(); } };
    if (e.key === "ArrowLeft") press("#prev");
    else if (e.key === "ArrowRight") press("#next");
    else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") press("#undo");
    else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "y") press("#redo");
  });
}
"""
