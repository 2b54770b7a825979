"""Built-in backbone adapters. Each module registers its adapters when imported; the
registry (`harness.backbones.registry.BUILTIN_ADAPTER_MODULES`) imports them on demand."""
