"""Use cases that turn a trained model into files a person listens to: ``synth`` (a checkpoint
and a ``GenerationRequest`` → WAVs) and ``vocode`` (recordings → their resynthesis). Each
writes one ``SampleRecord`` per stream (WAV + spectrogram + JSON); the generation itself is
``wavegen.generate``'s, which writes nothing."""
