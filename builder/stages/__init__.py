"""The build stages, in order: data, retriever, train, merge, export, bundle. Each reads what the
stage before it wrote in the run folder and records what it wrote in the run manifest."""
