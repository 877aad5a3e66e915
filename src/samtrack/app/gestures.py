"""Mouse and keyboard gestures on the frame image, as JavaScript the page runs on load.

Gradio's click event on an image gives the pixel but not the button, and knows no drags: this script
turns a right click into a negative click and a drag into a box, and adds keyboard shortcuts
(arrow keys: previous/next frame, Ctrl+Z / Ctrl+Y: undo/redo). Each gesture is written as JSON into a
hidden textbox (`#gesture`) whose change event runs `Handlers.gesture`.
"""

GESTURES_JS = r"""
() => {
  // Mouse and keyboard gestures on the frame image that Gradio's click event cannot express:
  // right click = negative click, drag = box, arrow keys = previous/next frame, Ctrl+Z / Ctrl+Y = undo/redo.
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
  let start = null, dragged = false;
  document.addEventListener("mousedown", (e) => {
    const img = frameAt(e);
    if (img && e.button === 0) { start = [img, pixel(img, e)]; dragged = false; e.preventDefault(); }
  }, true);
  document.addEventListener("mouseup", (e) => {
    if (!start || e.button !== 0) return;
    const [img, [x0, y0]] = start;
    const [x1, y1] = pixel(img, e);
    start = null;
    if (Math.abs(x1 - x0) > 8 && Math.abs(y1 - y0) > 8) { dragged = true; send({kind: "box", box: [x0, y0, x1, y1]}); }
  }, true);
  document.addEventListener("click", (e) => {  // a drag is a box, not also a click
    if (dragged && frameAt(e)) { dragged = false; e.stopPropagation(); e.preventDefault(); }
  }, true);
  document.addEventListener("contextmenu", (e) => {
    const img = frameAt(e);
    if (img) { e.preventDefault(); send({kind: "negative", point: pixel(img, e)}); }
  }, true);
  document.addEventListener("keydown", (e) => {
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
