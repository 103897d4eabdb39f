"""Speech family: keras-hub Whisper and Moonshine, keyword spotting and speech to text.

Kind: `AudioBackbone` (raw waveforms in, an in-model converter, the encoder,
the decoder for heads that ask for it); audio readers and pipeline, audio
augmentation, `SpeechToTextHead` and its exported transcriber.
"""
