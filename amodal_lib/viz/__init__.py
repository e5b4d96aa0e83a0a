"""Every plot of the study. Each function returns a matplotlib Figure; notebooks save it with
``ctx.save_figure``. Palettes are seaborn's colour-blind-safe ones. Figures are laid out for the size a
paper prints them (:func:`.base.layout_problems` says what falls short: text too small at a page's
width, overlapping labels, empty panels); a legend goes under the panels (:func:`.base.legend_below`),
never over the data.

- :mod:`.base`: colours, the image behind the masks, overlays, the protocol and metric names, and the
  layout helpers;
- :mod:`.data`: the data and completions in the image (notebooks 00-03);
- :mod:`.training`: training runs, a stage's validation and the checkpoint it kept (01-03, 10);
- :mod:`.results`: the supplementary's figures and analyses (04-09), PCNet-M's completions (10).
- :mod:`.seg_input`: the segmentation-input experiment (11).
- :mod:`.pose`: the pose change with the SPADE renderer, Fig 10 and its training run (13).
- :mod:`.editing`: scene editing, the inpainters and Fig 6 (12).

Everything is reachable as ``viz.NAME``.
"""
from .base import (ERASER_COLOR, HIDDEN_COLOR, METRIC_NAMES, METRIC_TITLES, PRED_COLOR, PROTOCOL_NAMES,
                   VISIBLE_COLOR, draw_completion, drop_overlapping_labels, hidden_layers, layout_problems, legend_below,
                   load_image, overlay)
from .data import instance_table, plot_completions, plot_counts, plot_crops, plot_examples
from .results import (plot_box_pairs, plot_miou_vs_visible, plot_pcnet_completions, plot_posterior_sample_groups,
                      plot_posterior_samples, plot_posterior_width, plot_pred_vs_gt, plot_prior_samples,
                      plot_seed_spread, plot_threshold_reasons, plot_threshold_sweep,
                      plot_width_checks)
from .training import (plot_architecture, plot_occlusion_spread, plot_stage1_training, plot_stage2_training,
                       plot_training_history,
                       plot_validation_through_training)
from .seg_input import (plot_drop_per_bin, plot_robustness, plot_segmentation_examples, plot_segmenter_history,
                        plot_table1)
from .pose import plot_gan_history, plot_pose_change, plot_pose_strip
from .editing import edit_panels, plot_filled_holes, plot_inpainter_training, plot_scene_edits
