"""medseg.classic"""
