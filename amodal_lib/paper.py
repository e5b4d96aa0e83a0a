"""The paper's numbers and claims, in one place (Ling et al., NeurIPS 2020, supplementary).

Every number is on KINS, at the scale of protocol A (pooled). They come from two experiments
that must never be set side by side as if they were one:

- :data:`GT_VISIBLE_INPUT`: the ground-truth visible mask of each instance is completed (the
  setting of every table of this study);
- :data:`PREDICTED_INPUT`: supplementary Table 1, masks predicted by a ResNet-PSP inside the
  ground-truth box are completed. The paper gives Deocclusion (PCNet-M) numbers only here.
"""
from __future__ import annotations

from typing import Optional

#: the decoder threshold searched on the KINS validation set (supplementary 3.1)
THRESHOLD = 0.1

#: the KL weight schedule of supplementary eq. (1)
KL_SCHEDULE = {"kl_final": 0.5, "kl_start": 0.01, "kl_alpha": 0.9995, "kl_t_begin": 2000}

GT_VISIBLE_INPUT = {
    "Amodal-VAE": {"full": 94.68, "invisible": 62.85},
    "visible mask": {"full": 87.03, "invisible": None},
}
PREDICTED_INPUT = {
    "predicted masks": {"full": 80.83, "invisible": None},
    "Amodal-VAE": {"full": 86.03, "invisible": 60.71},
    "Deocclusion (PCNet-M)": {"full": 84.94, "invisible": 52.93},
}


def _drop(metric: str) -> float:
    return round(GT_VISIBLE_INPUT["Amodal-VAE"][metric] - PREDICTED_INPUT["Amodal-VAE"][metric], 2)


#: what the paper says without a number, by the name of the result of ours that tests it
CLAIMS = {
    "threshold": f"the best threshold on the KINS validation set is t = {THRESHOLD:g} (supplementary 3.1)",
    "gap_trend": "the best-of-20 curve lies above the posterior mode's, and the gap narrows as the "
                 "occluded area becomes smaller (supplementary Fig 1)",
    "posterior_width": "the more occluded an object, the wider its predicted posterior (supplementary Fig 4)",
    "failures": "most failure cases come from wrong box predictions and are solved by a human-drawn "
                "amodal box (supplementary Figs 7-8)",
    "seg_input_ahead": "with predicted visible masks as input, Amodal-VAE outperforms Deocclusion (PCNet-M) "
                       "(supplementary Table 1)",
    "seg_input_robust": "with predicted visible masks, Amodal-VAE's invisible mIoU drops far less than its full "
                        f"mIoU ({_drop('invisible'):.2f} against {_drop('full'):.2f} points on KINS; supplementary 2)",
}


def describe(rows: dict, input_name: Optional[str] = None) -> str:
    """One line of numbers, e.g. ``"Amodal-VAE 94.68 full / 62.85 invisible; visible mask 87.03 full"``,
    prefixed with the experiment when ``input_name`` is given."""
    parts = []
    for method, r in rows.items():
        inv = f" / {r['invisible']:.2f} invisible" if r["invisible"] is not None else ""
        parts.append(f"{method} {r['full']:.2f} full{inv}")
    text = "; ".join(parts)
    return f"KINS, {input_name} as input: {text}" if input_name else text


GT_VISIBLE = describe(GT_VISIBLE_INPUT, "GT visible masks")
PREDICTED = describe(PREDICTED_INPUT, "predicted masks (supplementary Table 1)")
