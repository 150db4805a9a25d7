"""The toy sequential recommender: embedding + pooling + linear, trained under Ray Train, swept with Ray Tune."""
