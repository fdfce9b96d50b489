"""Evaluation protocols: 1-click mIoU and coverage, label accuracy, and classical baselines."""
