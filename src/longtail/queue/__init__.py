"""The owed-runs queue (reports/results/owed.yaml): run its entries on one device, merge the results."""
