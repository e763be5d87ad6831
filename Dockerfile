# agvp-hpo on a GPU Ray cluster: one image for the Ray head, the Ray GPU workers and the API service.
# TORCH_SPEC picks the torch build (default: CUDA 12.x wheels from PyPI; the CPU pair works too).
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0 torchvision==0.28.0"
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/agvp-hpo
RUN pip install $TORCH_SPEC
COPY pyproject.toml README.md ./
COPY hpo ./hpo
COPY trainers ./trainers
COPY service ./service
COPY search_spaces ./search_spaces
RUN pip install .
WORKDIR /results
