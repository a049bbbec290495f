"""Packaging for smcn-tf (SMCN, ICASSP 2022, in Keras 3 / TensorFlow)."""

import setuptools

setuptools.setup(
    name="smcn-tf",
    version="0.1.0",
    description=(
        "Self-guided Modality Calibration Network for speech + text emotion "
        "recognition, in Keras 3 / TensorFlow."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["smcn_tf", "smcn_tf.*"]),
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # The Keras this code is tested on: it uses private Keras symbols
        # (smcn_tf/private_keras_api.py, TESTED_KERAS), which may change in
        # any release. Move both together, after private_keras_api_test passes.
        "keras>=3.15,<3.16",
        "keras-hub>=0.32,<0.40",
        "transformers>=5,<6",
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26,<3",
        "soundfile>=0.12,<1",
        "pyyaml>=6,<7",
        "tqdm>=4.60,<5",
        "tensorflow-serving-api>=2.21,<2.22",
        "grpcio>=1.60,<2",
        "av>=12,<20",
        # The TensorBoard figures (confusion matrices, attention).
        "matplotlib>=3.8,<4",
        # The real-speech benchmark's reference classifier.
        "scikit-learn>=1.4,<2",
        # Resampling audio read at another rate (smcn_tf.features.audio).
        "scipy>=1.11,<2",
        # smcn serve's /monitoring/prometheus/metrics (smcn_tf.serving.local.metrics).
        "prometheus-client>=0.20,<1",
    ],
    extras_require={
        "dev": ["pytest>=8,<10"],
        # scripts/benchmark_real_speech.py: openSMILE functionals (eGeMAPS, ComParE)
        # for its reference rows. Not a runtime dependency; ships its own binary.
        "bench": ["opensmile>=2.5,<3"],
    },
    entry_points={"console_scripts": ["smcn=smcn_tf.cli:main"]},
)
