"""A prelude for `python -c` scripts that must run as on an image without TensorFlow: after it,
tensorflow, tensorboardX and tensorflow_datasets look not installed (find_spec None, import raises
ModuleNotFoundError)."""

import textwrap

HIDE_TENSORFLOW = textwrap.dedent("""
    import sys

    HIDDEN = ("tensorflow", "tensorboardX", "tensorflow_datasets")

    class Hide:
        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                return None
            return self.finder.find_spec(name, path, target)

        def __getattr__(self, attr):
            return getattr(self.finder, attr)

    sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
""")
