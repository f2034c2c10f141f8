"""What the installed package carries for its users' tools."""

from importlib import resources


def test_the_package_declares_its_type_hints():
    # PEP 561: without py.typed, mypy and pyright ignore the SDK's annotations.
    assert resources.files("ains").joinpath("py.typed").is_file()
