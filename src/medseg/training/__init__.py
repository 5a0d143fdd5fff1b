"""medseg.training"""
