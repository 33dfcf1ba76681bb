"""Speed, measured side by side: every runtime of a bundle (`runtimes`), training throughput
(`training`), and the code set's look-ups (`codeset`)."""
