"""Serving bundles over HTTP: one process speaking deepline's own API, TensorFlow Serving's REST
API and KServe's Open Inference Protocol (V2), with dynamic batching, Prometheus metrics, drift
monitoring and a web page. Start it with ``deepline serve PATH``."""
