"""The REST server, a product surface beside the desktop app: it loads a coder bundle and serves
`models.pipeline.Pipeline.suggest` over HTTP. It imports models/ only, never the builder."""
