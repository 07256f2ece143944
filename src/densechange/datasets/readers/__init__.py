"""The datasets: image-mask and change-detection folders and scenes, their crop plans and same-shape batching."""
