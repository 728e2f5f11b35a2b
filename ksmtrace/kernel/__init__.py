"""Kernel access layer: sysfs, procfs, BTF, tracefs, kallsyms and knob control."""
