"""Look inside a trained CNN: filters, feature maps, measured receptive fields, top patches and
attribution, as pure functions over a model's variables and inputs (TensorFlow-free):

    features     the layer table (shapes, theoretical receptive fields) and layer outputs
    filters      kernels as image grids
    erf          the effective receptive field (Luo et al. 2016) and its numbers
    attribution  saliency, Grad-CAM, occlusion
    patches      the dataset patches that excite a unit most (Zeiler & Fergus 2014)
    render       PNG figures and index.html (matplotlib)
    cli          `./launch.sh visualize`
"""

from cnnjax.visualize import attribution, erf, features, filters, patches

__all__ = ["attribution", "erf", "features", "filters", "patches"]
