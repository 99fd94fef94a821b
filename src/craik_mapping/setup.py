from setuptools import find_packages, setup

package_name = 'craik_mapping'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='craik maintainers',
    maintainer_email='maintainers@craik-robotics.org',
    description='Streaming 3D Gaussian-splat map from RGB-D (integrate, refine, render, PLY) '
                'and the gaussian_mapper node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['gaussian_mapper = craik_mapping.gaussian_mapper_node:main'],
    },
)
