"""Kernel access layer: sysfs, procfs, BTF, kallsyms, header tree and knob control."""
