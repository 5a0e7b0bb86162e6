"""The gate without its I/O: the policy and its pure `decide`, the evidence it judges (computed from
arrays and frames), and the typed report that reports/gate.json holds. No tracking, no files."""
