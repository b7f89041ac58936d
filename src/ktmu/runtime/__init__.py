"""Where and how a model runs: the device and arithmetic precision (:mod:`.device`) and the processes of a run (:mod:`.dist`)."""
