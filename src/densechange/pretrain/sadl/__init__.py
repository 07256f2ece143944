"""The SaDL method: two views with correspondence, class-balanced points, heads, background swap, losses.

Paper: Chen et al., "Semantic-aware Dense Representation Learning for Remote Sensing Image Change
Detection", IEEE TGRS 2022; reference code justchenhao/SaDL_CD.
"""
