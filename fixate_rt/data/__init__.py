"""Data formats (readers, writers, validation), slate layouts and the synthetic data generator."""
