"""An interactive scene editor for JupyterLab (notebook 12): pick an instance from a list or by
clicking on it, remove it, see the edited scene and the shapes that were completed, undo.

    editor = SceneEditor(image, annotations, vae=vae, background=bg, instance=inst)
    editor.widget          # display it (ipywidgets; clicks through ipyevents)
    editor.remove(7)       # the same as picking 7 and pressing "Remove"
    editor.undo()

Each removal is :func:`amodal_lib.experiments.edit.remove` on the scene as it is now (removals add up); the
history is a stack, so "Undo" steps back one removal. Without a front end (papermill, nbval) the
widget is built and never drawn; everything also works from Python.

Two images, each showing what the other does not: the scene as it is now (the inpainted result
of the latest removal; click an object to pick it) and, once something was removed, the shapes
that removal completed drawn over it (visible part blue, revealed part orange: which pixels the
instance inpainter filled, the rest of the hole being background).

The front end is found by its CSS classes: the whole editor ``amodal-editor``, the list
``amodal-editor-pick``, the buttons ``amodal-editor-remove`` and ``amodal-editor-undo``, the
scene image ``amodal-editor-scene`` (also ``amodal-editor-result``: it is the inpainted result),
the shapes image ``amodal-editor-shapes``, the status line ``amodal-editor-status``.
"""
from __future__ import annotations

import io
from typing import Optional

import numpy as np

from .data import masks as M
from .data.records import AnnotationSet
from .experiments import edit as E
from .viz.base import overlay
from .viz.editing import REMOVED_COLOR, edit_panels

SCALE = 2   # the images are drawn this many times their size (the embedded images are 512 px wide)


def png(image: np.ndarray, scale: int = SCALE) -> bytes:
    """PNG bytes of an HxWx3 image (uint8, or float in [0, 1]) enlarged ``scale`` times (nearest)."""
    from PIL import Image
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if scale > 1:
        a = a.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


class SceneEditor:
    """The editor's state (a stack of scenes) and its widget (module doc)."""

    def __init__(self, image: np.ndarray, annotations, *, vae=None, background=None, instance=None,
                 dilate_px: int = E.DEFAULT_DILATE, threshold: Optional[float] = None, image_id=None,
                 selected=None):
        insts = list(annotations.instances if isinstance(annotations, AnnotationSet) else annotations)
        if image_id is None:
            image_id = insts[0].image_id if insts else None
        insts = [i for i in insts if i.image_id == image_id]
        self.models = dict(vae=vae, background=background, instance=instance)
        self.dilate_px, self.threshold = int(dilate_px), threshold
        self.categories = dict(annotations.categories) if isinstance(annotations, AnnotationSet) else {}
        self.history: list = [(np.asarray(image).copy(), insts, None)]   # (image, instances, EditResult)
        self.selected = selected if selected in [i.id for i in insts] else None   # picked at the start
        self._widget = None
        self._quiet = False

    # ---- state -------------------------------------------------------------------------
    @property
    def image(self) -> np.ndarray:
        return self.history[-1][0]

    @property
    def instances(self) -> list:
        return self.history[-1][1]

    @property
    def last(self):
        """The EditResult of the latest removal (None before any)."""
        return self.history[-1][2]

    def instance_at(self, x: float, y: float) -> Optional[int]:
        """The id of the instance whose visible mask holds image pixel (x, y), if any."""
        c, r = int(x), int(y)
        for inst in self.instances:
            if 0 <= r < inst.height and 0 <= c < inst.width and M.decode(inst.visible)[r, c]:
                return inst.id
        return None

    def remove(self, ann_id) -> E.EditResult:
        """Remove instance ``ann_id`` from the current scene (a new step in the history)."""
        res = E.remove(self.image, self.instances, [ann_id], dilate_px=self.dilate_px, threshold=self.threshold,
                       **self.models)
        self.history.append((res.image, E.edited_annotations(res, self.instances), res))
        self.selected = None
        self._refresh(f"removed {ann_id}: " + (f"completed {', '.join(map(str, res.order))} behind it, "
                                               if res.order else "nothing behind it to complete, ")
                      + f"{int(res.hole.sum())} pixels repainted")
        return res

    def undo(self) -> bool:
        """Step back one removal; False when there is none."""
        if len(self.history) <= 1:
            self._refresh("nothing to undo")
            return False
        self.history.pop()
        self.selected = None
        self._refresh("undone")
        return True

    def select(self, ann_id) -> None:
        self.selected = ann_id
        self._refresh(f"picked {ann_id}" if ann_id is not None else "")

    # ---- drawing ---------------------------------------------------------------------
    def _label(self, inst) -> str:
        name = self.categories.get(inst.category_id, inst.category or inst.category_id)
        return f"{inst.id}: {name} ({inst.visible_area} px)"

    def scene_panel(self) -> np.ndarray:
        """The current scene, the picked instance tinted."""
        H, W = self.image.shape[:2]
        layers = [(M.decode(i.visible).astype(bool), REMOVED_COLOR) for i in self.instances if i.id == self.selected]
        return overlay(self.image, layers, H, W, 0.55)

    def shapes_panel(self) -> Optional[np.ndarray]:
        """The shapes the latest removal completed, over the scene it made (None before any removal)."""
        if self.last is None:
            return None
        prev_image, prev_insts, _ = self.history[-2]
        return edit_panels(prev_image, prev_insts, self.last)[1][1]

    @property
    def widget(self):
        """The ipywidgets front end (built once)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        import ipywidgets as W
        self.w_pick = W.Dropdown(description="instance", layout=W.Layout(width="360px"))
        self.w_pick.add_class("amodal-editor-pick")
        self.w_remove = W.Button(description="Remove", button_style="danger", icon="trash")
        self.w_remove.add_class("amodal-editor-remove")
        self.w_undo = W.Button(description="Undo", icon="undo")
        self.w_undo.add_class("amodal-editor-undo")
        self.w_status = W.HTML()
        self.w_status.add_class("amodal-editor-status")
        self.w_scene, self.w_shapes = W.Image(format="png"), W.Image(format="png")
        for w, cls in ((self.w_scene, "scene"), (self.w_scene, "result"), (self.w_shapes, "shapes")):
            w.add_class(f"amodal-editor-{cls}")
        self.w_pick.observe(lambda ch: self.select(ch["new"]) if not self._quiet else None, names="value")
        self.w_remove.on_click(lambda _: self.remove(self.w_pick.value) if self.w_pick.value is not None else None)
        self.w_undo.on_click(lambda _: self.undo())
        try:
            from ipyevents import Event
            self._events = Event(source=self.w_scene, watched_events=["click"])
            self._events.on_dom_event(self._on_click)
        except ImportError:   # no clicks without ipyevents; the list still works
            self._events = None
        self._quiet = False
        self.w_shapes_box = W.VBox([W.HTML("<b>what the latest removal completed</b> (visible part blue, revealed "
                                           "part orange: filled by the instance inpainter; the rest of the hole is "
                                           "background)"), self.w_shapes])
        box = W.VBox([W.HBox([self.w_pick, self.w_remove, self.w_undo]), self.w_status,
                      W.HTML("<b>scene</b> (the edited result; click an object to pick it)"), self.w_scene,
                      self.w_shapes_box])
        box.add_class("amodal-editor")
        self._refresh("pick an instance (list or click), then Remove")
        return box

    def _on_click(self, event: dict) -> None:
        x, y = event.get("dataX"), event.get("dataY")
        if x is None or y is None:
            return
        hit = self.instance_at(x / SCALE, y / SCALE)
        if hit is not None:
            self._quiet = True
            try:
                self.w_pick.value = hit
            finally:
                self._quiet = False
            self.select(hit)

    def _refresh(self, status: str = "") -> None:
        if self._widget is None and not hasattr(self, "w_pick"):
            return
        self._quiet = True
        try:
            self.w_pick.options = [(self._label(i), i.id) for i in self.instances]
            self.w_pick.value = self.selected if self.selected in [i.id for i in self.instances] else None
        finally:
            self._quiet = False
        self.w_scene.value = png(self.scene_panel())
        shapes = self.shapes_panel()
        self.w_shapes_box.layout.display = "none" if shapes is None else None
        if shapes is not None:
            self.w_shapes.value = png(shapes)
        steps = len(self.history) - 1
        self.w_status.value = f"<span>{status}</span> <i>({steps} removal{'s' if steps != 1 else ''})</i>"
