"""What finished runs say: one run record and one grouping of comparable runs, read by the
report, the Section 4 analysis and the figures. Reads run folders; nothing of a run imports it."""
