"""12-lead ECG classifiers (1-D XResNet, Inception1d) and their label set."""
