"""The local TF Serving stand-in: model store, gRPC and REST services, the serve/predict commands."""
