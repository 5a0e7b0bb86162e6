import numpy as np

from mlgate.stages import validate


def test_the_column_summary_leaves_infinities_out(binary_spec, clean_frame):
    frame = clean_frame.assign(charges=[20.5, np.inf, 50.25, -np.inf, 89.9, 1e39])
    kinds = validate.summary_columns(frame, binary_spec)

    summarised = validate._summary_frame(frame, binary_spec, kinds)

    assert summarised["charges"].isna().tolist() == [False, True, False, True, False, True]
    assert summarised["tenure"].tolist() == clean_frame["tenure"].tolist()
