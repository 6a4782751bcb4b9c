"""The paper's experiments: train small models whose layers pass through the 5+1 phases.

``models`` (MiniAlexNet, MLP3), ``data`` (CIFAR-10 / MNIST loaders), ``train`` (one training run → a
safetensors checkpoint and a catalog row) and ``batch_size`` (the batch-size sweep of Martin & Mahoney,
JMLR 2021 / ICML 2019, scanned and classified). Everything heavy (torch) is imported by these modules, so
import them only where a command needs them.
"""
