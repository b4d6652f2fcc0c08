"""The peer in benchmarks/serve_load.py: the same attnkit run served by LitServe with its own
batching (same batch size and wait as attnkit's), the same prediction call inside.

    python benchmarks/_litserve_peer.py RUN PORT MAX_BATCH_SIZE BATCH_TIMEOUT_S"""
import sys

import litserve as ls
import torch

from attnkit.run import load_run, predict


class AttnkitAPI(ls.LitAPI):
    """One text per request (``{"texts": [text]}``), batched by LitServe."""

    def setup(self, device):
        torch.set_num_threads(2)
        self.run = load_run(sys.argv[1])

    def decode_request(self, request):
        return request["texts"][0]

    def predict(self, texts):
        texts = list(texts)
        return predict(self.run, texts, top_k=3, batch_size=len(texts))

    def encode_response(self, output):
        return {"predictions": [output]}


if __name__ == "__main__":
    port, size, wait = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    api = AttnkitAPI(max_batch_size=size, batch_timeout=wait) if size > 1 else AttnkitAPI()
    ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30).run(
        host="127.0.0.1", port=port, num_api_servers=1, generate_client_file=False, log_level="warning")
